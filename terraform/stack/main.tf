# Everything an environment deploys: one project = one instance of this module, called by
# terraform/environments/<env>/main.tf (which keeps its providers, backend and variables).
# dev and prod differ only in the variables they pass (tests/infra checks both are thin).
locals {
  repo_root    = abspath("${path.module}/../..")
  declarations = yamldecode(file("${local.repo_root}/common/declarations.yaml"))
  functions = {
    for name, f in local.declarations.functions : name => merge(f, lookup(var.function_overrides, name, {}))
  }
  zip_dir = coalesce(var.function_zip_dir, "${local.repo_root}/terraform/.build/functions")

  # Who invokes a function, by trigger (identities module).
  caller_of_trigger = {
    http        = "api_gateway"
    pubsub_push = "pubsub_push"
    scheduled   = "scheduler"
    tasks       = "tasks"
    # Identity Platform calls its blocking function without credentials: the function
    # verifies the Google-signed JWT of each call itself (common/adapters/blocking_token.py).
    identity_blocking = "allUsers"
  }
  # The blocking function's deterministic Cloud Run URL: registered in Identity Platform and
  # given to the function as the audience its JWTs must carry.
  blocking_function_url = "https://authorize-sign-in-${module.project_services.project_number}.${var.region}.run.app"

  # Functions that enqueue Cloud Tasks sign those tasks (OIDC) as the tasks invoker.
  enqueuers = toset([for name, f in local.functions : name if length(try(f.enqueues, [])) > 0])
}

module "project_services" {
  source     = "../modules/project_services"
  project_id = var.project_id
}

module "identities" {
  source     = "../modules/identities"
  project_id = var.project_id

  depends_on = [module.project_services]
}

module "secrets" {
  source     = "../modules/secrets"
  project_id = var.project_id
  region     = var.region
  secrets    = { for name, s in local.declarations.secrets : name => try(s.description, "") }

  depends_on = [module.project_services]
}

module "firestore" {
  source            = "../modules/firestore"
  project_id        = var.project_id
  location          = var.region
  delete_protection = var.firestore_delete_protection

  # The queries of common/services: the outbox sweep ranges and orders on occurred_at (one
  # field: a single-field index, kept explicitly); search's views range on availability's
  # changed_at; a booking counts a slot's taken seats below its capacity (slot_id equality,
  # index range: common/services/seats.py). Appointments are read by patient_key equality and
  # sorted in memory.
  composite_indexes = [
    {
      collection = "seats"
      fields = [
        { field_path = "slot_id", order = "ASCENDING" },
        { field_path = "index", order = "ASCENDING" },
      ]
    },
    {
      # The sweeper (common/services/sweeper.py): what is still `sending` past its due time.
      collection = "notifications"
      fields = [
        { field_path = "status", order = "ASCENDING" },
        { field_path = "retry_after", order = "ASCENDING" },
      ]
    },
    {
      # The sweeper: P1 reports still `pending` past their due time.
      collection = "p1_reports"
      fields = [
        { field_path = "status", order = "ASCENDING" },
        { field_path = "retry_after", order = "ASCENDING" },
      ]
    },
    {
      # A waiting room's view refreshes with the places changed since its last read.
      collection = "queue_entries"
      fields = [
        { field_path = "opening_id", order = "ASCENDING" },
        { field_path = "updated_at", order = "ASCENDING" },
      ]
    },
    {
      # The sweeper finds the holds past their time.
      collection = "holds"
      fields = [
        { field_path = "status", order = "ASCENDING" },
        { field_path = "expires_at", order = "ASCENDING" },
      ]
    },
    {
      # An impact dry run of a rules version pages through the live bookings by series, so
      # that both doses of a series are judged together (common/services/impact.py).
      collection = "appointments"
      fields = [
        { field_path = "status", order = "ASCENDING" },
        { field_path = "series_id", order = "ASCENDING" },
      ]
    },
    {
      # resume_impact_jobs: the dry runs still queued or running whose lease ran out.
      collection = "impact_jobs"
      fields = [
        { field_path = "status", order = "ASCENDING" },
        { field_path = "retry_after", order = "ASCENDING" },
      ]
    },
    {
      # resume_impact_jobs also resumes the re-plans whose lease ran out.
      collection = "replan_jobs"
      fields = [
        { field_path = "status", order = "ASCENDING" },
        { field_path = "retry_after", order = "ASCENDING" },
      ]
    },
    {
      # expire_holds: the re-plan offers past their time (and those left in `next`).
      collection = "replan_offers"
      fields = [
        { field_path = "status", order = "ASCENDING" },
        { field_path = "expires_at", order = "ASCENDING" },
      ]
    },
    {
      collection = "replan_offers"
      fields = [
        { field_path = "status", order = "ASCENDING" },
        { field_path = "updated_at", order = "ASCENDING" },
      ]
    },
    {
      # GET /v1/offers: a patient's open offers; the hotline's list of offers told to nobody.
      collection = "replan_offers"
      fields = [
        { field_path = "patient_key", order = "ASCENDING" },
        { field_path = "status", order = "ASCENDING" },
      ]
    },
    {
      collection = "replan_offers"
      fields = [
        { field_path = "status", order = "ASCENDING" },
        { field_path = "channel", order = "ASCENDING" },
      ]
    },
    {
      # match_waitlist: the people waiting, in the order they joined; their place in line.
      collection = "waitlist"
      fields = [
        { field_path = "status", order = "ASCENDING" },
        { field_path = "joined_at", order = "ASCENDING" },
      ]
    },
    {
      # TAK / NIE by SMS to the waitlist's offer sent to this (keyed) number.
      collection = "waitlist"
      fields = [
        { field_path = "phone_key", order = "ASCENDING" },
        { field_path = "status", order = "ASCENDING" },
      ]
    },
    {
      # TAK / NIE by SMS: the open offer sent to this (keyed) number.
      collection = "replan_offers"
      fields = [
        { field_path = "phone_key", order = "ASCENDING" },
        { field_path = "status", order = "ASCENDING" },
      ]
    },
    {
      # GET /v1/admin/replans/{id}: the offers of a job counted per status.
      collection = "replan_offers"
      fields = [
        { field_path = "job_id", order = "ASCENDING" },
        { field_path = "status", order = "ASCENDING" },
      ]
    },
    {
      collection = "replan_offers"
      fields = [
        { field_path = "job_id", order = "ASCENDING" },
        { field_path = "declined", order = "ASCENDING" },
      ]
    },
    {
      collection = "replan_offers"
      fields = [
        { field_path = "job_id", order = "ASCENDING" },
        { field_path = "expired", order = "ASCENDING" },
      ]
    },
    {
      # measure_booking_rates counts a county's bookings of the last day: point_id in [...],
      # created_at >= (common/services/expected_wait.py).
      collection = "appointments"
      fields = [
        { field_path = "point_id", order = "ASCENDING" },
        { field_path = "created_at", order = "ASCENDING" },
      ]
    },
    {
      # A new reservation reads the seats taken in its scope: point_id equality, a range of
      # days (common/services/reservations.py).
      collection = "seats"
      fields = [
        { field_path = "point_id", order = "ASCENDING" },
        { field_path = "day", order = "ASCENDING" },
      ]
    },
  ]
  ordered_fields = {
    outbox       = "occurred_at"
    availability = "changed_at"
  }
  # Every collection that holds personal data or temporary state expires by its own
  # `expires_at`, written by the code (tests/infra checks it; docs/retention.md says how long
  # and why). Not here: patients, appointments, vaccinations, referrals (the record of care,
  # kept for the programme), the outbox (an event must never be dropped unpublished).
  ttl_fields = {
    idempotency_keys    = "expires_at"
    integration_log     = "expires_at"
    sms_dialogs         = "expires_at"
    sms_inbound         = "expires_at"
    notifications       = "expires_at"
    phone_codes         = "expires_at"
    phone_limits        = "expires_at"
    callbacks           = "expires_at"
    p1_reports          = "expires_at"
    availability_deltas = "expires_at"
    audit_log           = "expires_at"
    quota_counters      = "expires_at"
    queue_entries       = "expires_at"
    holds               = "purge_at"
    seat_reservations   = "purge_at"
    impact_jobs         = "expires_at"
    impact_cases        = "expires_at"
    replan_jobs         = "purge_at"
    replan_offers       = "purge_at"
    waitlist            = "purge_at"
    used_assertions     = "expires_at"
  }

  depends_on = [module.project_services]
}

module "identity" {
  source                = "../modules/identity"
  project_id            = var.project_id
  blocking_function_url = local.blocking_function_url
  login_node            = var.login_node == null ? null : { issuer = var.login_node.issuer, client_id = var.login_node.client_id }
  authorized_domains    = var.identity_authorized_domains

  depends_on = [module.project_services]
}

module "function_source" {
  source      = "../modules/function_source"
  project_id  = var.project_id
  location    = var.region
  bucket_name = "${var.project_id}-function-source"

  depends_on = [module.project_services]
}

module "messaging" {
  source                     = "../modules/messaging"
  project_id                 = var.project_id
  topics                     = local.declarations.topics
  subscriptions              = local.declarations.subscriptions
  push_endpoints             = { for name, f in module.function : name => f.uri }
  push_service_account_email = module.identities.emails["pubsub_push"]
  push_service_account_id    = module.identities.ids["pubsub_push"]

  depends_on = [module.project_services]
}

module "tasks" {
  source     = "../modules/tasks"
  project_id = var.project_id
  region     = var.region
  queues     = local.declarations.queues

  depends_on = [module.project_services]
}

# One entry of `functions:` in common/declarations.yaml (plus its folder) = one function.
module "function" {
  source   = "../modules/function"
  for_each = local.functions

  project_id      = var.project_id
  region          = var.region
  name            = each.key
  trigger         = each.value.trigger
  source_bucket   = module.function_source.bucket
  source_zip      = "${local.zip_dir}/${each.key}.zip"
  memory          = try(each.value.memory, "256Mi")
  cpu             = try(each.value.cpu, null)
  timeout_seconds = try(each.value.timeout_seconds, 60)
  min_instances   = try(each.value.min_instances, 0)
  max_instances   = try(each.value.max_instances, 10)
  concurrency     = try(each.value.concurrency, 1)
  project_roles = concat(
    try(each.value.project_roles, []),
    try(each.value.identity_accounts, false) ? [module.identity.account_manager_role] : [],
  )
  publish_topics = { for t in try(each.value.publishes, []) : t => module.messaging.topic_ids[t] }
  enqueue_queues = { for q in try(each.value.enqueues, []) : q => module.tasks.queue_names[q] }
  secrets        = { for s in try(each.value.secrets, []) : s => module.secrets.ids[s] }
  environment = merge(
    try(each.value.env, {}),
    contains(local.enqueuers, each.key) ? {
      TASKS_INVOKER_SERVICE_ACCOUNT = module.identities.emails["tasks"]
      # The task target: send_reminder's deterministic Cloud Run URL (its module output cannot
      # feed another instance of the same module call: that would be a cycle).
      SEND_REMINDER_URL = "https://send-reminder-${module.project_services.project_number}.${var.region}.run.app"
      # run_impact_job's, for the impact dry runs' tasks (common/services/impact.py).
      RUN_IMPACT_JOB_URL = "https://run-impact-job-${module.project_services.project_number}.${var.region}.run.app"
      # run_replan_job's, for the re-plans' tasks (common/services/replan.py).
      RUN_REPLAN_JOB_URL = "https://run-replan-job-${module.project_services.project_number}.${var.region}.run.app"
    } : {},
    each.value.trigger == "identity_blocking" ? {
      BLOCKING_FUNCTION_URL  = local.blocking_function_url
      LOGIN_NODE_PROVIDER_ID = module.identity.login_node_provider_id
      LOGIN_NODE_ISSUER      = try(var.login_node.issuer, "")
      LOGIN_NODE_CLIENT_ID   = try(var.login_node.client_id, "")
      LOGIN_NODE_JWKS_URL    = try(var.login_node.jwks_url, "")
    } : {},
  )
  labels = { environment = var.environment }
  invokers = {
    caller = (local.caller_of_trigger[each.value.trigger] == "allUsers" ? "allUsers"
    : "serviceAccount:${module.identities.emails[local.caller_of_trigger[each.value.trigger]]}")
  }

  depends_on = [module.project_services]
}

# An enqueuing function may act as the tasks invoker (to mint its tasks' OIDC tokens); no
# other function may, and the invoker itself holds no project role.
resource "google_service_account_iam_member" "enqueuer_acts_as_tasks_invoker" {
  for_each = local.enqueuers

  service_account_id = module.identities.ids["tasks"]
  role               = "roles/iam.serviceAccountUser"
  member             = "serviceAccount:${module.function[each.key].service_account_email}"
}

module "scheduler" {
  source                        = "../modules/scheduler"
  project_id                    = var.project_id
  region                        = var.region
  schedules                     = local.declarations.schedules
  function_uris                 = { for name, f in module.function : name => f.uri }
  function_timeouts             = { for name, f in module.function : name => f.timeout_seconds }
  invoker_service_account_email = module.identities.emails["scheduler"]

  depends_on = [module.project_services]
}

module "api_gateway" {
  source                        = "../modules/api_gateway"
  project_id                    = var.project_id
  gateway_region                = var.gateway_region
  openapi_path                  = "${local.repo_root}/api/openapi.yaml"
  gateway_service_account_email = module.identities.emails["api_gateway"]
  backends = {
    for name, f in module.function : name => { uri = f.uri, deadline = f.timeout_seconds }
    if try(local.functions[name].public, false)
  }

  depends_on = [module.project_services]
}

# The public edge (docs/operations.md, "The public edge"): an HTTPS load balancer in front of
# the gateway, for api_domain, whose Cloud Armor policy rate-limits each client address. It is
# built once api_domain is set: its managed certificate needs the domain.
module "edge" {
  source            = "../modules/edge"
  count             = var.api_domain == null ? 0 : 1
  project_id        = var.project_id
  domain            = var.api_domain
  gateway_region    = var.gateway_region
  gateway_id        = module.api_gateway.gateway_id
  rate_limit        = var.edge_rate_limit
  ip_ban            = var.edge_ip_ban
  trusted_ip_ranges = var.edge_trusted_ip_ranges

  depends_on = [module.project_services]
}

module "web_bucket" {
  source       = "../modules/web_bucket"
  project_id   = var.project_id
  location     = var.region
  bucket_name  = "${var.project_id}-web"
  cors_origins = var.web_cors_origins

  depends_on = [module.project_services]
}

module "monitoring" {
  source             = "../modules/monitoring"
  project_id         = var.project_id
  environment        = var.environment
  notification_email = var.notification_email
  dead_letter_topics = module.messaging.dead_letter_topics
  function_services  = { for name, f in module.function : name => f.service }

  depends_on = [module.project_services]
}
