terraform {
  required_version = ">= 1.6"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 6.0"
    }
    google-beta = {
      source  = "hashicorp/google-beta"
      version = "~> 6.0"
    }
  }

  # Partial configuration: terraform init -backend-config="bucket=<state bucket>"
  # (docs/operations.md creates the bucket; cloudbuild.yaml passes _TF_STATE_BUCKET).
  backend "gcs" {
    prefix = "e-rejestracja/prod"
  }
}
