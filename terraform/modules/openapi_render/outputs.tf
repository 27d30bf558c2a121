output "document" {
  description = "The Swagger 2.0 document for API Gateway (YAML)."
  value       = local.rendered
}

output "functions" {
  description = "Functions named by x-function in the source document."
  value       = sort(tolist(local.x_functions))
}

output "missing_backends" {
  description = "x-functions without a backend (must be empty)."
  value       = sort(tolist(setsubtract(local.x_functions, keys(var.backends))))
}
