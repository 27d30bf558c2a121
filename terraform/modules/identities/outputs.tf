output "emails" {
  description = "Caller key => service account email."
  value       = { for k, sa in google_service_account.caller : k => sa.email }
}

output "ids" {
  description = "Caller key => service account resource id."
  value       = { for k, sa in google_service_account.caller : k => sa.id }
}
