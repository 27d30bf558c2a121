resource "google_monitoring_notification_channel" "email" {
  project      = var.project_id
  display_name = "e-Rejestracja on-call (${var.environment})"
  type         = "email"
  labels = {
    email_address = var.notification_email
  }
}

locals {
  services_filter = join(", ", [for s in values(var.function_services) : "\"${s}\""])
}

# A message on a dead-letter topic is an event that no retry could deliver: someone must look
# at it (docs/operations.md: reading and replaying dead letters).
resource "google_monitoring_alert_policy" "dead_letters" {
  for_each = toset(var.dead_letter_topics)

  project               = var.project_id
  display_name          = "[${var.environment}] Dead letters on ${each.value}"
  combiner              = "OR"
  notification_channels = [google_monitoring_notification_channel.email.id]

  conditions {
    display_name = "Messages published to ${each.value}"
    condition_threshold {
      filter          = "resource.type = \"pubsub_topic\" AND resource.label.topic_id = \"${each.value}\" AND metric.type = \"pubsub.googleapis.com/topic/send_message_operation_count\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
      aggregations {
        alignment_period     = "60s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
      }
      trigger {
        count = 1
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = "Events failed delivery after the maximum attempts and went to `${each.value}`. Read them from its `-inspect` subscription and replay: docs/operations.md#dead-letters."
  }

  alert_strategy {
    auto_close = "86400s"
  }
}

# 5xx ratio per function (Cloud Run request_count of the functions' services).
resource "google_monitoring_alert_policy" "function_errors" {
  project               = var.project_id
  display_name          = "[${var.environment}] Function 5xx ratio above ${var.error_ratio_threshold * 100}%"
  combiner              = "OR"
  notification_channels = [google_monitoring_notification_channel.email.id]

  conditions {
    display_name = "5xx / all requests per function"
    condition_threshold {
      filter             = "resource.type = \"cloud_run_revision\" AND resource.label.service_name = one_of(${local.services_filter}) AND metric.type = \"run.googleapis.com/request_count\" AND metric.label.response_code_class = \"5xx\""
      denominator_filter = "resource.type = \"cloud_run_revision\" AND resource.label.service_name = one_of(${local.services_filter}) AND metric.type = \"run.googleapis.com/request_count\""
      comparison         = "COMPARISON_GT"
      threshold_value    = var.error_ratio_threshold
      duration           = "${var.error_window_seconds}s"
      aggregations {
        alignment_period     = "60s"
        per_series_aligner   = "ALIGN_RATE"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["resource.label.service_name"]
      }
      denominator_aggregations {
        alignment_period     = "60s"
        per_series_aligner   = "ALIGN_RATE"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["resource.label.service_name"]
      }
      trigger {
        count = 1
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = "A function answers 5xx to more than ${var.error_ratio_threshold * 100}% of its requests. Check its logs; roll back its revision if a deploy caused it (docs/operations.md#rollback)."
  }

  alert_strategy {
    auto_close = "86400s"
  }
}

# Errors the functions log without a 5xx (e.g. a malformed event acknowledged and dropped).
resource "google_logging_metric" "function_errors" {
  project = var.project_id
  name    = "function-error-logs"
  filter  = "resource.type = \"cloud_run_revision\" AND resource.labels.service_name = (${join(" OR ", [for s in values(var.function_services) : "\"${s}\""])}) AND severity >= ERROR"
  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    labels {
      key        = "service_name"
      value_type = "STRING"
    }
  }
  label_extractors = {
    service_name = "EXTRACT(resource.labels.service_name)"
  }
}

resource "google_monitoring_alert_policy" "function_error_logs" {
  project               = var.project_id
  display_name          = "[${var.environment}] Function error logs"
  combiner              = "OR"
  notification_channels = [google_monitoring_notification_channel.email.id]

  conditions {
    display_name = "ERROR log entries per function"
    condition_threshold {
      filter          = "resource.type = \"cloud_run_revision\" AND metric.type = \"logging.googleapis.com/user/${google_logging_metric.function_errors.name}\""
      comparison      = "COMPARISON_GT"
      threshold_value = 10
      duration        = "300s"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["metric.label.service_name"]
      }
      trigger {
        count = 1
      }
    }
  }

  alert_strategy {
    auto_close = "86400s"
  }
}
