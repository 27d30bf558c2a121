# Cloud Scheduler jobs of common/declarations.yaml (locally: emulator/scheduler.py). Each job
# POSTs {} to its function with an OIDC token of the scheduler identity.
resource "google_cloud_scheduler_job" "this" {
  for_each = var.schedules

  project          = var.project_id
  region           = var.region
  name             = each.key
  description      = try(each.value.description, "")
  schedule         = each.value.schedule
  time_zone        = try(each.value.time_zone, "Europe/Warsaw")
  attempt_deadline = "${min(max(lookup(var.function_timeouts, each.value.function, 180), 15), 1800)}s"

  # A missed run is made good by the next one (every job here is a sweep).
  retry_config {
    retry_count = 0
  }

  http_target {
    http_method = "POST"
    uri         = var.function_uris[each.value.function]
    body        = base64encode("{}")
    headers = {
      "Content-Type" = "application/json"
    }
    oidc_token {
      service_account_email = var.invoker_service_account_email
      audience              = var.function_uris[each.value.function]
    }
  }
}
