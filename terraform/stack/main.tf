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
  }

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
  ]
  ordered_fields = {
    outbox       = "occurred_at"
    availability = "changed_at"
  }
  ttl_fields = {
    idempotency_keys = "expires_at"
    integration_log  = "expires_at"
  }

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
  project_roles   = try(each.value.project_roles, [])
  publish_topics  = { for t in try(each.value.publishes, []) : t => module.messaging.topic_ids[t] }
  enqueue_queues  = { for q in try(each.value.enqueues, []) : q => module.tasks.queue_names[q] }
  secrets         = { for s in try(each.value.secrets, []) : s => module.secrets.ids[s] }
  environment = merge(
    try(each.value.env, {}),
    contains(local.enqueuers, each.key) ? {
      TASKS_INVOKER_SERVICE_ACCOUNT = module.identities.emails["tasks"]
      # The task target: send_reminder's deterministic Cloud Run URL (its module output cannot
      # feed another instance of the same module call: that would be a cycle).
      SEND_REMINDER_URL = "https://send-reminder-${module.project_services.project_number}.${var.region}.run.app"
    } : {},
  )
  labels = { environment = var.environment }
  invokers = {
    caller = "serviceAccount:${module.identities.emails[local.caller_of_trigger[each.value.trigger]]}"
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
