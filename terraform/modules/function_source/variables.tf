variable "project_id" {
  description = "The Google Cloud project."
  type        = string
}

variable "location" {
  description = "Bucket location."
  type        = string
  default     = "europe-central2"
}

variable "bucket_name" {
  description = "Name of the bucket holding the functions' source zips (globally unique, no random suffix)."
  type        = string
  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$", var.bucket_name))
    error_message = "bucket_name must be a valid Cloud Storage bucket name."
  }
}

variable "retention_days" {
  description = "Source zips older than this are deleted (a deployed revision no longer needs its zip)."
  type        = number
  default     = 365
}
