# Cloud Tasks queues of common/declarations.yaml (locally: emulator/cloudtasks).
resource "google_cloud_tasks_queue" "this" {
  for_each = var.queues

  project  = var.project_id
  location = var.region
  name     = each.key

  rate_limits {
    max_dispatches_per_second = try(each.value.max_dispatches_per_second, 10)
    max_concurrent_dispatches = try(each.value.max_concurrent_dispatches, 100)
  }

  retry_config {
    max_attempts  = try(each.value.max_attempts, 10)
    min_backoff   = try(each.value.min_backoff, "1s")
    max_backoff   = try(each.value.max_backoff, "60s")
    max_doublings = try(each.value.max_doublings, 5)
  }

  stackdriver_logging_config {
    sampling_ratio = 1.0
  }
}
