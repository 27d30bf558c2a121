output "bucket" {
  description = "The web bucket name."
  value       = google_storage_bucket.web.name
}

output "url" {
  description = "gs:// URL to upload builds to."
  value       = google_storage_bucket.web.url
}
