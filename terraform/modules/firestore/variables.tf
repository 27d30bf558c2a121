variable "project_id" {
  description = "The Google Cloud project."
  type        = string
}

variable "location" {
  description = "Firestore location (data residency: Poland)."
  type        = string
  default     = "europe-central2"
}

variable "delete_protection" {
  description = "Refuse deletion of the database (keep true outside throwaway projects)."
  type        = bool
  default     = true
}

variable "composite_indexes" {
  description = "Composite indexes the queries of common/ need (two fields or more each)."
  type = list(object({
    collection = string
    fields = list(object({
      field_path = string
      order      = string
    }))
  }))
  default = []
  validation {
    condition     = alltrue([for i in var.composite_indexes : length(i.fields) >= 2])
    error_message = "A composite index has at least two fields; one field is a single-field index."
  }
  validation {
    condition     = alltrue(flatten([for i in var.composite_indexes : [for f in i.fields : contains(["ASCENDING", "DESCENDING"], f.order)]]))
    error_message = "order must be ASCENDING or DESCENDING."
  }
}

variable "ordered_fields" {
  description = "Single fields that a query orders or ranges on: kept indexed ascending explicitly, key = collection, value = field."
  type        = map(string)
  default     = {}
}

variable "ttl_fields" {
  description = "TTL policies: key = collection, value = timestamp field after which a document is deleted."
  type        = map(string)
  default     = {}
}
