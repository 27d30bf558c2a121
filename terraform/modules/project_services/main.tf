# The APIs of the platform. Disabling an API on destroy would break whatever else uses it in
# the project, so destroying this module leaves them enabled.
# The project's number: it names the deterministic Cloud Run URL of every function.
data "google_project" "this" {
  project_id = var.project_id
}

resource "google_project_service" "this" {
  for_each = var.services

  project                    = var.project_id
  service                    = each.value
  disable_on_destroy         = false
  disable_dependent_services = false
}
