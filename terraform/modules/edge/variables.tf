variable "project_id" {
  description = "The Google Cloud project."
  type        = string
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a valid Google Cloud project id."
  }
}

variable "name" {
  description = "Prefix of the edge's resource names (address, certificate, policy, load balancer parts)."
  type        = string
  default     = "e-rejestracja"
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,38}[a-z0-9]$", var.name))
    error_message = "name must be 3 to 40 lowercase letters, digits and hyphens, starting with a letter (it prefixes Compute Engine names)."
  }
}

variable "domain" {
  description = "Host name of the public API (e.g. api.e-rejestracja.example): its Google-managed certificate is issued once its A record points at the edge's address."
  type        = string
  validation {
    condition = length(var.domain) <= 253 && can(regex(
      "^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z]([a-z0-9-]{0,61}[a-z0-9])?$", var.domain
    ))
    error_message = "domain must be a lowercase host name such as api.e-rejestracja.example: no scheme, port, path, trailing dot or wildcard (a managed certificate covers exact names only)."
  }
}

variable "gateway_region" {
  description = "Region of the API Gateway: the serverless NEG must be in the gateway's region."
  type        = string
  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]+$", var.gateway_region))
    error_message = "gateway_region must be a region name such as europe-west1."
  }
}

variable "gateway_id" {
  description = "Id of the API Gateway gateway the edge fronts (terraform/modules/api_gateway output gateway_id)."
  type        = string
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,61}[a-z0-9]$", var.gateway_id))
    error_message = "gateway_id must be a gateway id: lowercase letters, digits and hyphens."
  }
}

variable "rate_limit" {
  description = "Per client IP address: at most `requests` requests in any `interval_sec` seconds go through; the others get 429 from Cloud Armor (without Retry-After). preview = true only logs what would be refused."
  type = object({
    requests     = number
    interval_sec = number
    preview      = optional(bool, false)
  })
  default = { requests = 300, interval_sec = 60 }
  validation {
    condition     = var.rate_limit.requests >= 1 && var.rate_limit.requests <= 1000000 && floor(var.rate_limit.requests) == var.rate_limit.requests
    error_message = "rate_limit.requests must be a whole number from 1 to 1,000,000 (Cloud Armor's bounds for a throttle rule)."
  }
  validation {
    condition     = contains([10, 30, 60, 120, 180, 240, 300, 600, 900, 1200, 1800, 2700, 3600], var.rate_limit.interval_sec)
    error_message = "rate_limit.interval_sec must be one of Cloud Armor's intervals: 10, 30, 60, 120, 180, 240, 300, 600, 900, 1200, 1800, 2700 or 3600."
  }
}

variable "trusted_ip_ranges" {
  description = "Source ranges (CIDR) let through without the per-address limit: many people behind one address that the API knows, such as the hotline's call centre or a vaccination point's office. Their people still meet the per-identity quotas."
  type        = list(string)
  default     = []
  validation {
    condition = length(var.trusted_ip_ranges) <= 50 && alltrue([
      for r in var.trusted_ip_ranges : can(cidrhost(r, 0)) && !contains(["0.0.0.0/0", "::/0"], r)
    ])
    error_message = "trusted_ip_ranges: at most 50 CIDR ranges, none of them everything (0.0.0.0/0, ::/0)."
  }
}

variable "ip_ban" {
  description = "Optional ban of abusive addresses: an address whose requests refused by rate_limit number more than `requests` within `interval_sec` seconds is refused (429) altogether for `duration_sec` seconds. null: throttle only (the default: many people share an address behind a mobile operator's NAT)."
  type = object({
    requests     = number
    interval_sec = number
    duration_sec = number
  })
  default = null
  validation {
    condition = var.ip_ban == null || try(
      var.ip_ban.requests >= 1 && floor(var.ip_ban.requests) == var.ip_ban.requests
      && contains([10, 30, 60, 120, 180, 240, 300, 600, 900, 1200, 1800, 2700, 3600], var.ip_ban.interval_sec)
      && contains([60, 120, 180, 240, 300, 600, 900, 1200, 1800, 2700, 3600], var.ip_ban.duration_sec),
      false
    )
    error_message = "ip_ban: requests a whole number >= 1, interval_sec one of Cloud Armor's intervals (10 ... 3600), duration_sec one of 60, 120, 180, 240, 300, 600, 900, 1200, 1800, 2700, 3600."
  }
}

variable "log_sample_rate" {
  description = "Share of requests logged by the load balancer (with Cloud Armor's verdict: who was throttled). 1 logs every request."
  type        = number
  default     = 1
  validation {
    condition     = var.log_sample_rate >= 0 && var.log_sample_rate <= 1
    error_message = "log_sample_rate must be between 0 and 1."
  }
}
