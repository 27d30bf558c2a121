output "ip_address" {
  description = "IPv4 address of the edge: the A record of the domain points here."
  value       = google_compute_global_address.edge.address
}

output "url" {
  description = "Public URL of the API through the edge."
  value       = "https://${var.domain}"
}

output "security_policy" {
  description = "Name of the Cloud Armor policy (gcloud compute security-policies describe ...)."
  value       = google_compute_security_policy.edge.name
}
