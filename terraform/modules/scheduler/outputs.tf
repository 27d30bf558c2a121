output "job_ids" {
  description = "Schedule name => job id."
  value       = { for k, j in google_cloud_scheduler_job.this : k => j.id }
}
