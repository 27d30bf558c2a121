output "account_manager_role" {
  description = "The custom role of the accounts functions (projects/<p>/roles/identityAccountManager)."
  value       = google_project_iam_custom_role.account_manager.name
}

output "login_node_provider_id" {
  description = "The login node's provider id in Identity Platform."
  value       = var.login_node_provider_id
}
