# State in S3 with DynamoDB locking. Partial configuration: the bucket, its region and the lock table
# are per organisation and come from `terraform init -backend-config=backend.hcl` (copy
# backend.hcl.example). The key is fixed here so dev and prod can never share a state file.
terraform {
  backend "s3" {
    key     = "aws-s3-service/dev/terraform.tfstate"
    encrypt = true
  }
}
