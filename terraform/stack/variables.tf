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

variable "api_domain" {
  description = "Host name of the public API at the edge (HTTPS load balancer + Cloud Armor, terraform/modules/edge); null: no edge, the API is reached at the gateway's own URL only."
  type        = string
  default     = null
}

variable "edge_rate_limit" {
  description = "Per client IP address at the edge: at most `requests` requests per `interval_sec` seconds, the rest get 429 (preview = true: only logged)."
  type = object({
    requests     = number
    interval_sec = number
    preview      = optional(bool, false)
  })
  default = { requests = 300, interval_sec = 60 }
}

variable "edge_ip_ban" {
  description = "Optional ban at the edge: an address with more than `requests` refused requests in `interval_sec` seconds is refused for `duration_sec` seconds (null: throttle only)."
  type = object({
    requests     = number
    interval_sec = number
    duration_sec = number
  })
  default = null
}

variable "edge_trusted_ip_ranges" {
  description = "CIDR ranges let through the edge without the per-address limit: known addresses that many people share (the hotline's call centre, a vaccination point's office)."
  type        = list(string)
  default     = []
}

variable "login_node" {
  description = "The national login node (its OIDC bridge): issuer, JWKS URL and our client id (null: patients cannot sign in yet). docs/identity.md."
  type = object({
    issuer    = string
    jwks_url  = string
    client_id = string
  })
  default = null
  validation {
    condition     = var.login_node == null || (startswith(try(var.login_node.issuer, ""), "https://") && startswith(try(var.login_node.jwks_url, ""), "https://"))
    error_message = "The login node's issuer and JWKS URL are https:// URLs."
  }
}

variable "identity_authorized_domains" {
  description = "Domains the web apps sign in from (Identity Platform authorized domains)."
  type        = list(string)
  default     = []
}
