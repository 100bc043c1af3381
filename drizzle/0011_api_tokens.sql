CREATE TABLE `api_tokens` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`uuid` text NOT NULL,
	`created_at` integer DEFAULT (cast(unixepoch('subsec') * 1000 as integer)) NOT NULL,
	`name` text NOT NULL,
	`role` text NOT NULL,
	`lookup_id` text NOT NULL,
	`secret_hash` text NOT NULL,
	`created_by` text NOT NULL,
	`last_used_at` integer,
	`revoked_at` integer
);
--> statement-breakpoint
CREATE UNIQUE INDEX `api_tokens_uuid_unique` ON `api_tokens` (`uuid`);--> statement-breakpoint
CREATE UNIQUE INDEX `api_tokens_lookup_id_uq` ON `api_tokens` (`lookup_id`);--> statement-breakpoint
CREATE INDEX `api_tokens_name_idx` ON `api_tokens` (`name`,`created_at`);--> statement-breakpoint
CREATE INDEX `api_tokens_created_idx` ON `api_tokens` (`created_at`);