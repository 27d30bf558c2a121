variable "project_id" {
  description = "The project of this environment."
  type        = string
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a valid Google Cloud project id."
  }
}

variable "environment" {
  description = "Environment name (labels, alert titles)."
  type        = string
  validation {
    condition     = contains(["dev", "prod"], var.environment)
    error_message = "environment must be dev or prod."
  }
}

variable "region" {
  description = "Region of everything regional (data stays in Poland)."
  type        = string
  default     = "europe-central2"
  validation {
    condition     = var.region == "europe-central2"
    error_message = "Patient data stays in Poland: region must be europe-central2."
  }
}

variable "gateway_region" {
  description = "Region of the API Gateway (holds no data; only some regions offer it)."
  type        = string
  default     = "europe-west1"
}

variable "notification_email" {
  description = "E-mail address that receives the alerts."
  type        = string
}

variable "firestore_delete_protection" {
  description = "Protect the Firestore database against deletion."
  type        = bool
  default     = true
}

variable "function_zip_dir" {
  description = "Directory of the function zips built by terraform/scripts/package_functions.py (null: terraform/.build/functions)."
  type        = string
  default     = null
}

variable "function_overrides" {
  description = "Function name => settings of common/declarations.yaml it overrides in this environment (e.g. more instances in prod)."
  type        = map(map(any))
  default     = {}
  validation {
    condition = alltrue(flatten([for o in values(var.function_overrides) : [
      for k in keys(o) : contains(["memory", "cpu", "timeout_seconds", "min_instances", "max_instances", "concurrency"], k)
    ]]))
    error_message = "An override may change memory, cpu, timeout_seconds, min_instances, max_instances or concurrency only (trigger, roles and secrets stay in common/declarations.yaml)."
  }
}

variable "web_cors_origins" {
  description = "Origins allowed to fetch the web apps' assets cross-origin."
  type        = list(string)
  default     = []
}
