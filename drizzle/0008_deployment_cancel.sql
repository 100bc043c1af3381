ALTER TABLE `deployments` ADD `cancel_requested_at` integer;--> statement-breakpoint
ALTER TABLE `deployments` ADD `cancel_requested_by` text;--> statement-breakpoint
CREATE INDEX `deployments_status_idx` ON `deployments` (`status`);