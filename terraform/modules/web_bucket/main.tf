# The static web apps (the vaccination points' and the hotline's browser apps). The bucket is
# private (uniform access, public access prevention enforced): it is served through an HTTPS
# load balancer / CDN or Firebase Hosting, never as public objects. Versioning keeps the
# previous builds for rollback.
resource "google_storage_bucket" "web" {
  #checkov:skip=CKV_GCP_62:Access is logged by the serving layer (load balancer / Hosting) and Cloud Audit Logs; a usage-log bucket would duplicate it.
  project                     = var.project_id
  name                        = var.bucket_name
  location                    = var.location
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false

  versioning {
    enabled = true
  }

  website {
    main_page_suffix = "index.html"
    not_found_page   = "index.html"
  }

  lifecycle_rule {
    condition {
      num_newer_versions = var.noncurrent_versions_kept
      with_state         = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  dynamic "cors" {
    for_each = length(var.cors_origins) == 0 ? [] : [var.cors_origins]
    content {
      origin          = cors.value
      method          = ["GET", "HEAD"]
      response_header = ["Content-Type", "Cache-Control"]
      max_age_seconds = 3600
    }
  }
}
