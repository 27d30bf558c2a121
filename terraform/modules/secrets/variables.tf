variable "project_id" {
  description = "The Google Cloud project."
  type        = string
}

variable "region" {
  description = "Where secret payloads are stored (user-managed replication keeps them in Poland)."
  type        = string
  default     = "europe-central2"
}

variable "secrets" {
  description = "Secret id => description (common/declarations.yaml `secrets:`)."
  type        = map(string)
  validation {
    condition     = alltrue([for id in keys(var.secrets) : can(regex("^[A-Za-z0-9_-]{1,255}$", id))])
    error_message = "Secret ids may contain letters, digits, '_' and '-' only."
  }
}
