output "api_url" {
  description = "Base URL of the public API (the smoke test calls it)."
  value       = module.api_gateway.url
}

output "function_uris" {
  description = "Function name => URL (private: IAM-protected)."
  value       = { for name, f in module.function : name => f.uri }
}

output "web_bucket" {
  description = "Bucket of the static web apps."
  value       = module.web_bucket.bucket
}

output "edge_ip_address" {
  description = "IPv4 address of the public edge: api_domain's A record (null without api_domain)."
  value       = one(module.edge[*].ip_address)
}

output "edge_url" {
  description = "URL of the API through the edge, rate-limited per client address (null without api_domain)."
  value       = one(module.edge[*].url)
}
