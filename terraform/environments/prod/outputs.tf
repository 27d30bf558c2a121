output "api_url" {
  description = "Base URL of the public API (the smoke test calls it)."
  value       = module.stack.api_url
}

output "function_uris" {
  description = "Function name => URL (private: IAM-protected)."
  value       = module.stack.function_uris
}

output "web_bucket" {
  description = "Bucket of the static web apps."
  value       = module.stack.web_bucket
}

output "edge_ip_address" {
  description = "IPv4 address of the public edge: api_domain's A record (null without api_domain)."
  value       = module.stack.edge_ip_address
}

output "edge_url" {
  description = "URL of the API through the edge, rate-limited per client address (null without api_domain)."
  value       = module.stack.edge_url
}
