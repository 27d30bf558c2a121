variable "project_id" {
  description = "The Google Cloud project."
  type        = string
}

variable "bucket_name" {
  description = "Name of the static web apps bucket (globally unique, no random suffix)."
  type        = string
  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$", var.bucket_name))
    error_message = "bucket_name must be a valid Cloud Storage bucket name."
  }
}

variable "location" {
  description = "Bucket location."
  type        = string
  default     = "europe-central2"
}

variable "noncurrent_versions_kept" {
  description = "Previous versions of each object kept for rollback."
  type        = number
  default     = 10
  validation {
    condition     = var.noncurrent_versions_kept >= 1
    error_message = "Keep at least one previous version."
  }
}

variable "cors_origins" {
  description = "Origins allowed to fetch the assets cross-origin."
  type        = list(string)
  default     = []
}
