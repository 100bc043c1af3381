ALTER TABLE `apps` ADD `git_submodules` integer DEFAULT false NOT NULL;--> statement-breakpoint
ALTER TABLE `apps` ADD `git_lfs` integer DEFAULT false NOT NULL;