output "notification_channel" {
  description = "The e-mail notification channel id."
  value       = google_monitoring_notification_channel.email.id
}

output "alert_policies" {
  description = "Ids of the alert policies."
  value = concat(
    [for p in google_monitoring_alert_policy.dead_letters : p.id],
    [google_monitoring_alert_policy.function_errors.id, google_monitoring_alert_policy.function_error_logs.id],
  )
}
