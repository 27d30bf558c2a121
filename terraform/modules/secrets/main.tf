# Secret Manager entries only: the values are never in Terraform (nor in its state). An
# operator adds versions with `gcloud secrets versions add` (docs/operations.md).
resource "google_secret_manager_secret" "this" {
  for_each = var.secrets

  project   = var.project_id
  secret_id = each.key
  labels    = { managed-by = "terraform" }
  annotations = {
    description = each.value
  }

  replication {
    user_managed {
      replicas {
        location = var.region
      }
    }
  }
}
