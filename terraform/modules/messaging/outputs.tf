output "topic_ids" {
  description = "Topic name => topic id."
  value       = { for k, t in google_pubsub_topic.this : k => t.id }
}

output "subscription_ids" {
  description = "Subscription name => subscription id."
  value       = { for k, s in google_pubsub_subscription.this : k => s.id }
}

output "dead_letter_topics" {
  description = "Names of the topics used as dead-letter topics."
  value       = sort(tolist(local.dead_letter_names))
}
