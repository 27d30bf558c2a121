variable "project_id" {
  description = "The Google Cloud project."
  type        = string
}

variable "topics" {
  description = "common/declarations.yaml `topics:` (name => {description})."
  type        = map(any)
}

variable "subscriptions" {
  description = "common/declarations.yaml `subscriptions:` (name => settings)."
  type        = any
  validation {
    condition     = alltrue([for s in values(var.subscriptions) : can(s.topic)])
    error_message = "Every subscription names its topic."
  }
}

variable "push_endpoints" {
  description = "Function name => HTTPS endpoint, for subscriptions with push_function."
  type        = map(string)
  default     = {}
}

variable "push_service_account_email" {
  description = "Service account whose OIDC token authenticates push deliveries."
  type        = string
}

variable "push_service_account_id" {
  description = "Resource id of that service account (the Pub/Sub service agent mints its tokens)."
  type        = string
}

variable "message_retention" {
  description = "How long a topic and a pull subscription keep messages."
  type        = string
  default     = "604800s"
  validation {
    condition     = can(regex("^[0-9]+s$", var.message_retention))
    error_message = "message_retention must look like 604800s."
  }
}
