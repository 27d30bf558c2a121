# The (default) Firestore database in native mode, in Poland.
resource "google_firestore_database" "this" {
  project                           = var.project_id
  name                              = "(default)"
  location_id                       = var.location
  type                              = "FIRESTORE_NATIVE"
  point_in_time_recovery_enablement = "POINT_IN_TIME_RECOVERY_ENABLED"
  delete_protection_state           = var.delete_protection ? "DELETE_PROTECTION_ENABLED" : "DELETE_PROTECTION_DISABLED"
  deletion_policy                   = var.delete_protection ? "ABANDON" : "DELETE"
}

resource "google_firestore_index" "composite" {
  for_each = { for i in var.composite_indexes : "${i.collection}:${join(",", [for f in i.fields : "${f.field_path}-${f.order}"])}" => i }

  project    = var.project_id
  database   = google_firestore_database.this.name
  collection = each.value.collection

  dynamic "fields" {
    for_each = each.value.fields
    content {
      field_path = fields.value.field_path
      order      = fields.value.order
    }
  }
}

# Single-field indexes exist by default; these fields are declared so that the queries that
# depend on them (e.g. the outbox sweep: occurred_at < t ORDER BY occurred_at) keep working
# even if someone adds exemptions later.
resource "google_firestore_field" "ordered" {
  for_each = var.ordered_fields

  project    = var.project_id
  database   = google_firestore_database.this.name
  collection = each.key
  field      = each.value

  index_config {
    indexes {
      order       = "ASCENDING"
      query_scope = "COLLECTION"
    }
  }
}

# TTL policies. A TTL field is exempt from indexing (index_config {}): an ever-growing
# timestamp index is a write hotspot and no query reads it.
resource "google_firestore_field" "ttl" {
  for_each = var.ttl_fields

  project    = var.project_id
  database   = google_firestore_database.this.name
  collection = each.key
  field      = each.value

  ttl_config {}
  index_config {}
}
