# The providers are configured by the environment (terraform/environments/<env>/providers.tf)
# and passed down implicitly.
terraform {
  required_version = ">= 1.6"
  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 6.0"
    }
    # API Gateway (terraform/modules/api_gateway) exists only in the beta provider.
    google-beta = {
      source  = "hashicorp/google-beta"
      version = "~> 6.0"
    }
  }
}
