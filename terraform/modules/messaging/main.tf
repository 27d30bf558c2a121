# Topics and subscriptions of common/declarations.yaml, the same file the local stack
# provisions the emulator from (emulator/provision.py).
data "google_project" "this" {
  project_id = var.project_id
}

locals {
  pubsub_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"

  subscriptions = {
    for name, s in var.subscriptions : name => {
      topic                 = s.topic
      push_function         = try(s.push_function, null)
      ack_deadline_seconds  = try(s.ack_deadline_seconds, 10)
      max_delivery_attempts = try(s.max_delivery_attempts, null)
      dead_letter_topic     = try(s.dead_letter_topic, null)
      min_retry_backoff     = try(s.min_retry_backoff, "10s")
      max_retry_backoff     = try(s.max_retry_backoff, "600s")
    }
  }
  dead_lettered     = { for name, s in local.subscriptions : name => s if s.dead_letter_topic != null }
  dead_letter_names = toset([for s in values(local.dead_lettered) : s.dead_letter_topic])
}

resource "google_pubsub_topic" "this" {
  #checkov:skip=CKV_GCP_83:Google-managed encryption at rest; events carry no PESEL or personal data (patient_key is a keyed hash), CMEK would add key operations without a data-protection gain.
  for_each = var.topics

  project                    = var.project_id
  name                       = each.key
  message_retention_duration = var.message_retention
  labels                     = { managed-by = "terraform" }
}

resource "google_pubsub_subscription" "this" {
  for_each = local.subscriptions

  project                    = var.project_id
  name                       = each.key
  topic                      = google_pubsub_topic.this[each.value.topic].id
  ack_deadline_seconds       = each.value.ack_deadline_seconds
  message_retention_duration = var.message_retention
  labels                     = { managed-by = "terraform" }

  expiration_policy {
    ttl = "" # never expires, even when idle
  }

  retry_policy {
    minimum_backoff = each.value.min_retry_backoff
    maximum_backoff = each.value.max_retry_backoff
  }

  dynamic "push_config" {
    for_each = each.value.push_function == null ? [] : [each.value.push_function]
    content {
      push_endpoint = var.push_endpoints[push_config.value]
      oidc_token {
        service_account_email = var.push_service_account_email
        audience              = var.push_endpoints[push_config.value]
      }
    }
  }

  dynamic "dead_letter_policy" {
    for_each = each.value.dead_letter_topic == null ? [] : [each.value]
    content {
      dead_letter_topic     = google_pubsub_topic.this[dead_letter_policy.value.dead_letter_topic].id
      max_delivery_attempts = coalesce(dead_letter_policy.value.max_delivery_attempts, 5)
    }
  }
}

# Dead-lettering is done by the Pub/Sub service agent: it must publish to the dead-letter
# topic and acknowledge (subscribe) on the source subscription.
resource "google_pubsub_topic_iam_member" "dead_letter_publisher" {
  for_each = local.dead_letter_names

  project = var.project_id
  topic   = google_pubsub_topic.this[each.value].name
  role    = "roles/pubsub.publisher"
  member  = local.pubsub_agent
}

resource "google_pubsub_subscription_iam_member" "dead_letter_subscriber" {
  for_each = local.dead_lettered

  project      = var.project_id
  subscription = google_pubsub_subscription.this[each.key].name
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_agent
}

# The service agent mints the push OIDC tokens of the push identity (needed explicitly in
# projects created before April 2021; harmless after). Granted on that account only.
resource "google_service_account_iam_member" "push_token_creator" {
  service_account_id = var.push_service_account_id
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_agent
}
