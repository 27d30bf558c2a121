variable "project_id" {
  description = "The Google Cloud project."
  type        = string
}

variable "gateway_region" {
  description = "Region of the gateway. API Gateway is offered in a few regions only (europe-central2 was not among them when written: check `gcloud api-gateway locations list`); it holds no data."
  type        = string
  default     = "europe-west1"
}

variable "api_id" {
  description = "Id of the API and prefix of its configs and gateway."
  type        = string
  default     = "e-rejestracja"
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,40}$", var.api_id))
    error_message = "api_id must be lowercase letters, digits and hyphens."
  }
}

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
}

variable "gateway_service_account_email" {
  description = "Identity the gateway calls the functions with (OIDC, audience = function URL)."
  type        = string
}

variable "identity_project_id" {
  description = "Project of the Identity Platform / Firebase Auth tenant issuing the callers' ID tokens (default: project_id)."
  type        = string
  default     = null
}
