ALTER TABLE `apps` ADD `formation` text;--> statement-breakpoint
ALTER TABLE `releases` ADD `processes` text;