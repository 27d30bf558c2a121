output "ids" {
  description = "Secret id => full resource id (projects/.../secrets/...)."
  value       = { for k, s in google_secret_manager_secret.this : k => s.id }
}

output "secret_ids" {
  description = "Secret id => secret_id (for IAM bindings and env references)."
  value       = { for k, s in google_secret_manager_secret.this : k => s.secret_id }
}
