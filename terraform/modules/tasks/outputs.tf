output "queue_names" {
  description = "Queue name => queue name (as created, for IAM bindings)."
  value       = { for k, q in google_cloud_tasks_queue.this : k => q.name }
}

output "queue_ids" {
  description = "Queue name => queue id."
  value       = { for k, q in google_cloud_tasks_queue.this : k => q.id }
}
