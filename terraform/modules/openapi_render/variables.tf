variable "openapi_path" {
  description = "Path of api/openapi.yaml (OpenAPI 3, with x-function on each operation)."
  type        = string
}

variable "backends" {
  description = "Function name => {uri, deadline (seconds)} for every x-function of the document."
  type = map(object({
    uri      = string
    deadline = number
  }))
  validation {
    condition     = alltrue([for b in values(var.backends) : startswith(b.uri, "https://") && b.deadline > 0])
    error_message = "Backends are https:// URLs with a positive deadline."
  }
}

variable "identity_project_id" {
  description = "Project of the Identity Platform / Firebase Auth that issues the callers' ID tokens."
  type        = string
}
