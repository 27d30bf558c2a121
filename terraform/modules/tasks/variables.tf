variable "project_id" {
  description = "The Google Cloud project."
  type        = string
}

variable "region" {
  description = "Region of the queues."
  type        = string
  default     = "europe-central2"
}

variable "queues" {
  description = "common/declarations.yaml `queues:` (name => rate and retry settings)."
  type        = any
  validation {
    condition     = alltrue([for name in keys(var.queues) : can(regex("^[a-z][a-z0-9-]{0,99}$", name))])
    error_message = "Queue names are kebab-case."
  }
}
