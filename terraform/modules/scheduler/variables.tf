variable "project_id" {
  description = "The Google Cloud project."
  type        = string
}

variable "region" {
  description = "Region of the jobs."
  type        = string
  default     = "europe-central2"
}

variable "schedules" {
  description = "common/declarations.yaml `schedules:` (name => {schedule, time_zone, function})."
  type        = any
  validation {
    condition     = alltrue([for s in values(var.schedules) : can(s.schedule) && can(s.function)])
    error_message = "Every schedule has a cron `schedule` and a target `function`."
  }
}

variable "function_uris" {
  description = "Function name => HTTPS endpoint."
  type        = map(string)
}

variable "function_timeouts" {
  description = "Function name => timeout in seconds (the job's attempt deadline follows it)."
  type        = map(number)
  default     = {}
}

variable "invoker_service_account_email" {
  description = "Service account whose OIDC token authenticates the calls."
  type        = string
}
