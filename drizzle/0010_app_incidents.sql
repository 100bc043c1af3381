CREATE TABLE `app_incidents` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`uuid` text NOT NULL,
	`created_at` integer DEFAULT (cast(unixepoch('subsec') * 1000 as integer)) NOT NULL,
	`app_id` integer NOT NULL,
	`kind` text NOT NULL,
	`reason` text NOT NULL,
	`reported_at` integer,
	`resolved_at` integer,
	FOREIGN KEY (`app_id`) REFERENCES `apps`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE UNIQUE INDEX `app_incidents_uuid_unique` ON `app_incidents` (`uuid`);--> statement-breakpoint
CREATE INDEX `app_incidents_app_created_idx` ON `app_incidents` (`app_id`,`created_at`);--> statement-breakpoint
CREATE INDEX `app_incidents_resolved_idx` ON `app_incidents` (`resolved_at`);