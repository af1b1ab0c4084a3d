"""SNS: publishing and the HTTP(S) subscription webhook."""
