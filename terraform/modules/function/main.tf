# One Cloud Function (2nd gen) with its own service account and least-privilege IAM.
#
# A change of the zip's content changes the object name (its MD5), so the function gets a new
# revision; 2nd gen (Cloud Run) keeps serving the previous revision until the new one is
# ready, then moves all traffic to it.
locals {
  resource_name = replace(var.name, "_", "-")
  # Functions reached only by Pub/Sub push, Cloud Scheduler or Cloud Tasks accept internal
  # traffic only (those Google services count as internal for the same project); the API
  # Gateway is not internal, so http functions accept all traffic and rely on IAM (gateway SA
  # only). Every trigger is listed: a new one fails here until its ingress is decided.
  ingress = {
    http        = "ALLOW_ALL"
    pubsub_push = "ALLOW_INTERNAL_ONLY"
    scheduled   = "ALLOW_INTERNAL_ONLY"
    tasks       = "ALLOW_INTERNAL_ONLY"
    # Identity Platform's calls do not count as internal traffic; the JWT authenticates them.
    identity_blocking = "ALLOW_ALL"
  }[var.trigger]
}

resource "google_service_account" "this" {
  project      = var.project_id
  account_id   = "fn-${local.resource_name}"
  display_name = "Function ${var.name}"
  description  = "Runtime identity of the function ${var.name}; roles from common/declarations.yaml."
}

resource "google_project_iam_member" "project_roles" {
  for_each = toset(var.project_roles)

  project = var.project_id
  role    = each.value
  member  = "serviceAccount:${google_service_account.this.email}"
}

resource "google_pubsub_topic_iam_member" "publisher" {
  for_each = var.publish_topics

  project = var.project_id
  topic   = each.value
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${google_service_account.this.email}"
}

resource "google_cloud_tasks_queue_iam_member" "enqueuer" {
  for_each = var.enqueue_queues

  project  = var.project_id
  location = var.region
  name     = each.value
  role     = "roles/cloudtasks.enqueuer"
  member   = "serviceAccount:${google_service_account.this.email}"
}

resource "google_secret_manager_secret_iam_member" "accessor" {
  for_each = var.secrets

  project   = var.project_id
  secret_id = each.value
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.this.email}"
}

resource "google_storage_bucket_object" "source" {
  bucket = var.source_bucket
  name   = "${var.name}/${filemd5(var.source_zip)}.zip"
  source = var.source_zip
}

resource "google_cloudfunctions2_function" "this" {
  project     = var.project_id
  location    = var.region
  name        = local.resource_name
  description = "functions/${var.name} (${var.trigger})"
  labels      = merge(var.labels, { function = local.resource_name, trigger = replace(var.trigger, "_", "-") })

  build_config {
    runtime     = var.runtime
    entry_point = var.name
    source {
      storage_source {
        bucket = var.source_bucket
        object = google_storage_bucket_object.source.name
      }
    }
  }

  service_config {
    available_memory                 = var.memory
    available_cpu                    = var.cpu
    timeout_seconds                  = var.timeout_seconds
    min_instance_count               = var.min_instances
    max_instance_count               = var.max_instances
    max_instance_request_concurrency = var.concurrency
    ingress_settings                 = local.ingress
    all_traffic_on_latest_revision   = true
    service_account_email            = google_service_account.this.email
    environment_variables = merge({
      GOOGLE_CLOUD_PROJECT = var.project_id
      FUNCTION_REGION      = var.region
      LOG_EXECUTION_ID     = "true"
    }, var.environment)

    dynamic "secret_environment_variables" {
      for_each = var.secrets
      content {
        key        = secret_environment_variables.key
        project_id = var.project_id
        secret     = secret_environment_variables.key
        version    = "latest"
      }
    }
  }

  # The runtime must be able to read its secrets before the first revision starts.
  depends_on = [google_secret_manager_secret_iam_member.accessor]
}

resource "google_cloud_run_v2_service_iam_member" "invoker" {
  for_each = var.invokers

  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.this.service_config[0].service
  role     = "roles/run.invoker"
  member   = each.value

  lifecycle {
    precondition {
      condition     = each.value != "allUsers" || var.trigger == "identity_blocking"
      error_message = "Only Identity Platform's blocking function is invokable by allUsers."
    }
  }
}
