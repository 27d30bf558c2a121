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
