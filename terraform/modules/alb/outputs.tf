output "url" {
  description = "Base URL of the service (https:// when a certificate is set)."
  value       = "${local.https ? "https" : "http"}://${aws_lb.this.dns_name}"
}

output "dns_name" {
  description = "DNS name of the load balancer (CNAME/alias target)."
  value       = aws_lb.this.dns_name
}

output "zone_id" {
  description = "Hosted zone of the load balancer, for a Route 53 alias record."
  value       = aws_lb.this.zone_id
}

output "arn_suffix" {
  description = "ARN suffix of the load balancer (CloudWatch LoadBalancer dimension)."
  value       = aws_lb.this.arn_suffix
}

output "target_group_arn" {
  description = "Target group the ECS service registers its tasks in."
  value       = aws_lb_target_group.this.arn
  # ECS refuses a target group that no listener uses yet: hand it out only once the listeners exist.
  depends_on = [aws_lb_listener.http, aws_lb_listener.https]
}

output "target_group_arn_suffix" {
  description = "ARN suffix of the target group (CloudWatch TargetGroup dimension)."
  value       = aws_lb_target_group.this.arn_suffix
}

output "security_group_id" {
  description = "Security group of the load balancer (source of the tasks' ingress rule)."
  value       = aws_security_group.this.id
}

output "listener_arn" {
  description = "The listener that forwards to the target group (HTTPS when a certificate is set)."
  value       = local.https ? aws_lb_listener.https[0].arn : aws_lb_listener.http.arn
}
