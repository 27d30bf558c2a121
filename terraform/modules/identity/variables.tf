variable "project_id" {
  description = "The project whose Identity Platform this configures."
  type        = string
}

variable "blocking_function_url" {
  description = "URL of functions/authorize_sign_in (beforeCreate and beforeSignIn)."
  type        = string
  validation {
    condition     = startswith(var.blocking_function_url, "https://")
    error_message = "The blocking function is called over https."
  }
}

variable "login_node" {
  description = "The national login node's OIDC issuer and our client id there (null: not federated yet)."
  type = object({
    issuer    = string
    client_id = string
  })
  default = null
  validation {
    condition     = var.login_node == null || startswith(try(var.login_node.issuer, ""), "https://")
    error_message = "The login node's issuer is an https:// URL."
  }
}

variable "login_node_provider_id" {
  description = "Identity Platform provider id of the login node (the functions' LOGIN_NODE_PROVIDER_ID)."
  type        = string
  default     = "oidc.login-gov-pl"
  validation {
    condition     = startswith(var.login_node_provider_id, "oidc.")
    error_message = "An OIDC provider id starts with oidc."
  }
}

variable "authorized_domains" {
  description = "Domains the web apps sign in from."
  type        = list(string)
  default     = []
}
