output "vpc_id" {
  description = "ID of the VPC."
  value       = aws_vpc.this.id
}

output "vpc_cidr_block" {
  description = "IPv4 CIDR of the VPC."
  value       = aws_vpc.this.cidr_block
}

output "public_subnet_ids" {
  description = "Public subnets (ALB, NAT gateways), one per AZ."
  value       = aws_subnet.public[*].id
}

output "private_subnet_ids" {
  description = "Private subnets (ECS tasks, EKS nodes, RDS), one per AZ."
  value       = aws_subnet.private[*].id
}

output "nat_public_ips" {
  description = "Public IPs the private subnets reach the internet from (for allow-lists elsewhere)."
  value       = aws_eip.nat[*].public_ip
}
