output "database" {
  description = "The database name."
  value       = google_firestore_database.this.name
}
