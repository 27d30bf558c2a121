variable "project_id" {
  description = "The Google Cloud project."
  type        = string
}

variable "notification_email" {
  description = "Where alerts go (an on-call group address)."
  type        = string
  validation {
    condition     = can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", var.notification_email))
    error_message = "notification_email must be an e-mail address."
  }
}

variable "dead_letter_topics" {
  description = "Dead-letter topics: any message published to one of them raises an alert."
  type        = list(string)
}

variable "function_services" {
  description = "Function name => Cloud Run service name, watched for 5xx responses."
  type        = map(string)
}

variable "error_ratio_threshold" {
  description = "Alert when this fraction of a function's requests fail with 5xx over the window."
  type        = number
  default     = 0.05
  validation {
    condition     = var.error_ratio_threshold > 0 && var.error_ratio_threshold < 1
    error_message = "error_ratio_threshold must be within (0, 1)."
  }
}

variable "error_window_seconds" {
  description = "Window of the error ratio."
  type        = number
  default     = 300
}

variable "environment" {
  description = "Environment name shown in the alert titles."
  type        = string
}
