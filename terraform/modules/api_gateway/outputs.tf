output "url" {
  description = "Base URL of the public API."
  value       = "https://${google_api_gateway_gateway.this.default_hostname}"
}

output "rendered_openapi" {
  description = "The Swagger 2.0 document given to API Gateway."
  value       = local.rendered
}

output "functions" {
  description = "Functions named by x-function in api/openapi.yaml."
  value       = sort(tolist(local.x_functions))
}

output "gateway_id" {
  description = "Id of the gateway (the edge's serverless NEG points at it)."
  value       = google_api_gateway_gateway.this.gateway_id
}
