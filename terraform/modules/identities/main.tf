# The identities that call functions: the API Gateway, Pub/Sub push subscriptions, Cloud
# Scheduler and Cloud Tasks each sign their requests with an OIDC token of their own service
# account. These accounts hold no project role at all: each is granted roles/run.invoker on
# exactly the functions it calls (terraform/modules/function); only the functions that enqueue
# tasks may act as the tasks invoker (terraform/stack).
resource "google_service_account" "caller" {
  for_each = var.callers

  project      = var.project_id
  account_id   = each.value
  display_name = "Invoker of functions: ${each.key}"
  description  = "OIDC identity of ${each.key} calling Cloud Functions; no project roles."
}
