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
