# The bucket of the functions' source zips (terraform/scripts/package_functions.py builds them,
# terraform/modules/function uploads each under a name that is its content hash).
resource "google_storage_bucket" "source" {
  #checkov:skip=CKV_GCP_62:Holds only build inputs produced by Cloud Build; access is audited by Cloud Audit Logs, a separate access-log bucket adds nothing.
  project                     = var.project_id
  name                        = var.bucket_name
  location                    = var.location
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false

  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      age = var.retention_days
    }
    action {
      type = "Delete"
    }
  }
}
