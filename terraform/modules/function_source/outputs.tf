output "bucket" {
  description = "The source bucket name."
  value       = google_storage_bucket.source.name
}
