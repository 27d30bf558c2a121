variable "project_id" {
  description = "The Google Cloud project."
  type        = string
}

variable "callers" {
  description = "Caller identities that invoke functions: key => account id (6-30 chars)."
  type        = map(string)
  default = {
    api_gateway = "api-gateway-invoker"
    pubsub_push = "pubsub-push-invoker"
    scheduler   = "scheduler-invoker"
    tasks       = "tasks-invoker"
  }
  validation {
    condition     = alltrue([for id in values(var.callers) : can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", id))])
    error_message = "Account ids must be 6-30 lowercase letters, digits or hyphens."
  }
}
