output "uri" {
  description = "HTTPS endpoint of the function (the Cloud Run URL, also the OIDC audience)."
  value       = google_cloudfunctions2_function.this.service_config[0].uri
}

output "service" {
  description = "The Cloud Run service behind the function."
  value       = google_cloudfunctions2_function.this.service_config[0].service
}

output "name" {
  description = "Resource name of the function."
  value       = google_cloudfunctions2_function.this.name
}

output "service_account_email" {
  description = "The function's own service account."
  value       = google_service_account.this.email
}

output "timeout_seconds" {
  description = "Request timeout (used as the gateway deadline)."
  value       = var.timeout_seconds
}
