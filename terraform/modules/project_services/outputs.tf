output "enabled" {
  description = "The enabled APIs (depend on this to order resources after enablement)."
  value       = [for s in google_project_service.this : s.service]
}

output "project_number" {
  description = "The project's number (https://<function>-<number>.<region>.run.app)."
  value       = data.google_project.this.number
}
